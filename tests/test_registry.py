"""Registry and plugin discovery: folder, entry point, module path, did-you-mean."""

import importlib.metadata
import subprocess
import sys
import textwrap

import pytest

from wsolbench.cli.main import main
from wsolbench.data.sources import get_dataset, list_datasets
from wsolbench.method import Capabilities, Prediction, WSOLMethod
from wsolbench.registry import (
    METHODS,
    PluginError,
    check_plugins,
    get_method,
    list_methods,
    register_method,
)

PLUGIN_MODULES = {
    "method": '''
        import torch
        from wsolbench.method import Capabilities, Prediction, WSOLMethod

        class EverywhereMethod(WSOLMethod):
            """Test plugin: a constant map."""
            capabilities = Capabilities(trainable=False)
            def predict(self, images, labels):
                return Prediction(None, torch.ones(images.shape[0], 4, 4))
        ''',
    # registered under another name than its entry point's
    "renamed": """
        from wsolbench.registry import register_method
        from my_wsol_plugin.method import EverywhereMethod

        @register_method("registeredname")
        class Renamed(EverywhereMethod):
            pass
        """,
    # the first interface, without and with @register_method
    "old": """
        from wsolbench.method import WSOLMethod

        class OldStyle(WSOLMethod):
            trainable = False
        """,
    "old_registered": """
        from wsolbench.method import WSOLMethod
        from wsolbench.registry import register_method

        @register_method("oldregistered")
        class OldRegistered(WSOLMethod):
            needs_grad_at_inference = True
        """,
}
# an unregistered class whose own name is a first-party method's
PLUGIN_MODULES["clash"] = """
    from my_wsol_plugin.method import EverywhereMethod

    class CAM(EverywhereMethod):
        pass
    """
# a class registering itself under a first-party method's name
PLUGIN_MODULES["clash_registered"] = """
    from wsolbench.registry import register_method
    from my_wsol_plugin.method import EverywhereMethod

    @register_method("center")
    class FakeCenter(EverywhereMethod):
        pass
    """
# declarations the harness cannot use, each loaded by path
PLUGIN_MODULES["declarations"] = """
    import pathlib
    from wsolbench.method import MethodConfig
    from my_wsol_plugin.method import EverywhereMethod

    class TrainTypo(EverywhereMethod):
        capabilities = EverywhereMethod.capabilities.__class__(trainable=True)
        config = MethodConfig(defaults={"train": {"max_epoch": 1}})

    class CapabilitiesDict(EverywhereMethod):
        capabilities = {"trainable": False}

    class PathDefault(EverywhereMethod):
        config = MethodConfig(defaults={"root": pathlib.Path("/tmp")})

    class TupleInPreset(EverywhereMethod):
        config = MethodConfig(defaults={"sizes": [1]}, presets={"cub": {"sizes": (1, 2)}})

    class HiddenDefault(EverywhereMethod):
        def __init__(self, num_classes, alpha=0.5):
            super().__init__(num_classes)

    class ReferenceNotText(EverywhereMethod):
        capabilities = EverywhereMethod.capabilities.__class__(reference=("CAM", "CVPR 2016"))

    class ReferenceOfLines(EverywhereMethod):
        capabilities = EverywhereMethod.capabilities.__class__(reference="CAM\\n(CVPR 2016)")

    from methods.cam.method import CAM

    class TweakedCam(CAM):  # a variant of cam, table-named "tweakedcam", claiming cam's paper
        pass
    """
ENTRY_POINTS = {
    "everywhere": "my_wsol_plugin.method:EverywhereMethod",
    "brokenplugin": "my_wsol_plugin.missing_module:Nothing",
    "entryname": "my_wsol_plugin.renamed:Renamed",
    "oldstyle": "my_wsol_plugin.old:OldStyle",
    "oldregistered": "my_wsol_plugin.old_registered:OldRegistered",
}


@pytest.fixture
def plugin_on_path(tmp_path, monkeypatch):
    """A third-party package with entry points, installed by putting its dist-info on sys.path."""
    package = tmp_path / "my_wsol_plugin"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for module, source in PLUGIN_MODULES.items():
        (package / f"{module}.py").write_text(textwrap.dedent(source))
    dist_info = tmp_path / "my_wsol_plugin-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: my-wsol-plugin\nVersion: 0.1\n"
    )
    lines = [f"{name} = {value}" for name, value in ENTRY_POINTS.items()]
    (dist_info / "entry_points.txt").write_text("\n".join(["[wsolbench.methods]", *lines, ""]))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in [*ENTRY_POINTS, "registeredname", "everywheremethod"]:
        METHODS.module_dict.pop(name, None)
    for module in [m for m in sys.modules if m.split(".")[0] == "my_wsol_plugin"]:
        del sys.modules[module]  # the next test imports its own tmp_path's copy


def test_first_party_folder_is_found_and_registered():
    cls = get_method("center")
    assert cls.name == "center" and issubclass(cls, WSOLMethod)
    assert not cls.capabilities.trainable
    assert "center" in list_methods()


def test_entry_point_plugin_is_listed_without_import_then_loaded(plugin_on_path):
    assert "everywhere" in list_methods()
    assert "my_wsol_plugin.method" not in sys.modules
    cls = get_method("everywhere")
    assert cls.__name__ == "EverywhereMethod" and cls.name == "everywhere"


def test_module_path_plugin(plugin_on_path):
    cls = get_method("my_wsol_plugin.method:EverywhereMethod")
    assert cls.__name__ == "EverywhereMethod"


def test_a_class_loaded_by_path_never_takes_another_methods_name(plugin_on_path):
    with pytest.raises(PluginError, match="would be named 'cam', which another method already"):
        get_method("my_wsol_plugin.clash:CAM")
    assert get_method("cam").__module__ == "methods.cam.method"


def test_a_plugin_registering_a_built_in_name_is_refused(plugin_on_path):
    """Results of a class registered as "center" would be recorded and tabled as center's."""
    with pytest.raises(PluginError, match="another method already has that name"):
        get_method("my_wsol_plugin.clash_registered:FakeCenter")
    assert get_method("center").__module__ == "methods.center.method"


def test_an_installed_plugin_named_like_a_built_in_is_refused(plugin_on_path, monkeypatch):
    """An entry point named "center" would never be used (the built-in is found first)."""
    import wsolbench.registry as registry

    shadow = importlib.metadata.EntryPoint(
        "center", "my_wsol_plugin.method:EverywhereMethod", registry.ENTRY_POINT_GROUP
    )
    monkeypatch.setattr(registry, "_entry_points", lambda: {"center": shadow})
    # as on a first use in a fresh process (undone after the test)
    monkeypatch.delitem(registry.METHODS.module_dict, "center", raising=False)
    for module in [m for m in sys.modules if m.split(".")[:2] == ["methods", "center"]]:
        monkeypatch.delitem(sys.modules, module)
    with pytest.raises(PluginError, match="two methods are named 'center'"):
        get_method("center")


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (
            "TrainTypo",
            r"'train'\]: unknown training setting 'max_epoch'; did you mean 'max_epochs'",
        ),
        ("CapabilitiesDict", "capabilities is dict, not Capabilities"),
        ("ReferenceNotText", "capabilities.reference is tuple, not one line of text"),
        ("ReferenceOfLines", "capabilities.reference is text of several lines, not one line"),
        (
            "TweakedCam",
            r"method 'tweakedcam' inherits the capabilities.reference of method 'cam' \(CAM\)",
        ),
        ("HiddenDefault", "constructor's alpha=0.5 is a default config.defaults lacks"),
        ("PathDefault", r"config.defaults\['root'\] is PosixPath\('/tmp'\), not a plain value"),
        ("TupleInPreset", r"config.presets\['cub'\]\['sizes'\] is a tuple \(use a list\)"),
    ],
)
def test_a_declaration_the_harness_cannot_use_is_refused_when_found(plugin_on_path, cls, message):
    """Before any work: a typo'd train default would be recorded but never used, a Path default
    would fail when the result is written, after training."""
    with pytest.raises(PluginError, match=message):
        get_method(f"my_wsol_plugin.declarations:{cls}")


def test_unknown_method_suggests_close_names():
    with pytest.raises(KeyError, match=r"unknown method 'centre'; did you mean 'center'\?"):
        get_method("centre")


def test_unknown_dataset_suggests_close_names():
    with pytest.raises(KeyError, match="did you mean 'synthetic'"):
        get_dataset("synthtic")
    assert {"cub", "ilsvrc", "openimages", "synthetic"} <= set(list_datasets())


def test_broken_plugin_is_reported_not_fatal(plugin_on_path):
    statuses = {s.name: s for s in check_plugins()}
    assert statuses["center"].ok
    assert statuses["everywhere"].ok
    broken = statuses["brokenplugin"]
    assert not broken.ok and "missing_module" in broken.detail


MISMATCH = (
    "entry point 'entryname' (my_wsol_plugin.renamed:Renamed, group wsolbench.methods) loads the "
    "method registered as 'registeredname', and the two names must agree: rename the entry point "
    "to 'registeredname' in the plugin's pyproject.toml (then reinstall it), or register the "
    'class as @register_method("entryname")'
)


def test_an_entry_point_must_be_named_as_its_method_registers(plugin_on_path):
    with pytest.raises(PluginError) as refused:
        get_method("entryname")
    assert str(refused.value) == MISMATCH
    # without @register_method, the class takes the entry point's name
    assert get_method("everywhere").name == "everywhere"


def test_the_old_interface_found_by_entry_point_is_refused(plugin_on_path):
    with pytest.raises(PluginError, match=r"'oldstyle' declares `trainable = False`, the old"):
        get_method("oldstyle")
    with pytest.raises(PluginError) as refused:  # raised by @register_method while importing
        get_method("oldregistered")
    assert "declare `capabilities = Capabilities(needs_grad_at_inference=True)`" in str(
        refused.value
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [("entryname", MISMATCH), ("oldstyle", "declares `trainable = False`, the old interface")],
)
def test_run_and_check_report_an_unusable_plugin_in_one_error_line(
    plugin_on_path, tmp_path, capsys, name, expected
):
    work_dir = str(tmp_path / "run")
    run = ["run", "--method", name, "--dataset", "synthetic", "--work-dir", work_dir]
    for argv in (run, ["check", name]):
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.count("\n") == 1, captured
        assert captured.err.startswith("error: ") and expected in captured.err
    assert not (tmp_path / "run").exists()


def test_list_verbose_reports_the_unusable_plugins_and_lists_the_others(plugin_on_path, capsys):
    assert main(["list", "-v"]) == 1  # a broken plugin fails the listing, after every line
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.split("datasets:")[0].splitlines()[1:]}
    assert MISMATCH in rows["entryname"] and "BROKEN" in rows["entryname"]
    assert "BROKEN" in rows["oldstyle"] and "the old interface" in rows["oldstyle"]
    assert " ok " in rows["everywhere"] and " ok " in rows["center"]


def test_register_rejects_non_methods_and_bad_names():
    with pytest.raises(TypeError, match="not a WSOLMethod subclass"):
        register_method("notamethod")(object)
    with pytest.raises(ValueError, match="invalid method name 'Bad-Name'"):
        register_method("Bad-Name")


def test_register_method_sets_name():
    @register_method("tmp_registered")
    class Temporary(WSOLMethod):
        capabilities = Capabilities(trainable=False)

        def predict(self, images, labels):
            return Prediction(None, images[:, 0])

    try:
        assert get_method("tmp_registered") is Temporary and Temporary.name == "tmp_registered"
    finally:
        METHODS.module_dict.pop("tmp_registered")


def test_list_imports_no_plugin():
    code = (
        "import sys; from wsolbench.registry import list_methods; names = list_methods(); "
        "print('center' in names, any(m.startswith('methods.') for m in sys.modules), "
        "'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["True", "False", "False"], done.stdout + done.stderr
