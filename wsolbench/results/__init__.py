"""What a run leaves behind and how it is read: the record, per-image records, the work
dir layout, grouping by (method, config), bootstrap and intervals. No torch.
"""
