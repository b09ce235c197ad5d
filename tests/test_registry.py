"""Registry and plugin discovery: folder, entry point, module path, did-you-mean."""

import subprocess
import sys
import textwrap

import pytest

from wsolbench.data.sources import get_dataset, list_datasets
from wsolbench.method import Prediction, WSOLMethod
from wsolbench.registry import METHODS, check_plugins, get_method, list_methods, register_method

PLUGIN_SOURCE = textwrap.dedent(
    '''
    import torch
    from wsolbench.method import Prediction, WSOLMethod

    class EverywhereMethod(WSOLMethod):
        """Test plugin: a constant map."""
        trainable = False
        def predict(self, images, labels):
            return Prediction(None, torch.ones(images.shape[0], 4, 4))
    '''
)


@pytest.fixture
def plugin_on_path(tmp_path, monkeypatch):
    """A third-party package with an entry point, installed by putting its dist-info on sys.path."""
    package = tmp_path / "my_wsol_plugin"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "method.py").write_text(PLUGIN_SOURCE)
    dist_info = tmp_path / "my_wsol_plugin-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: my-wsol-plugin\nVersion: 0.1\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "[wsolbench.methods]\neverywhere = my_wsol_plugin.method:EverywhereMethod\n"
        "brokenplugin = my_wsol_plugin.missing_module:Nothing\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in ("everywhere", "brokenplugin"):
        METHODS.module_dict.pop(name, None)


def test_first_party_folder_is_found_and_registered():
    cls = get_method("center")
    assert cls.name == "center" and issubclass(cls, WSOLMethod) and not cls.trainable
    assert "center" in list_methods()


def test_entry_point_plugin_is_listed_without_import_then_loaded(plugin_on_path):
    assert "everywhere" in list_methods()
    assert "my_wsol_plugin.method" not in sys.modules
    cls = get_method("everywhere")
    assert cls.__name__ == "EverywhereMethod" and cls.name == "everywhere"


def test_module_path_plugin(plugin_on_path):
    cls = get_method("my_wsol_plugin.method:EverywhereMethod")
    assert cls.__name__ == "EverywhereMethod"


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


def test_register_rejects_non_methods_and_bad_names():
    with pytest.raises(TypeError, match="not a WSOLMethod subclass"):
        register_method("notamethod")(object)
    with pytest.raises(ValueError, match="invalid method name 'Bad-Name'"):
        register_method("Bad-Name")


def test_register_method_sets_name():
    @register_method("tmp_registered")
    class Temporary(WSOLMethod):
        trainable = False

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
