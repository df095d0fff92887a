"""Data: NIfTI I/O, dataset layouts, preprocessing, phantoms and prepared slice datasets."""
from .layouts import LABELS, Case, detect_layout, list_cases, region_mask
from .nifti import Volume, load_volume, save_volume
from .prepared import PairedDataset, PreparedSlices, UnpairedDataset, load_prepared, prepare

__all__ = ["LABELS", "Case", "detect_layout", "list_cases", "region_mask", "Volume", "load_volume",
           "save_volume", "PairedDataset", "PreparedSlices", "UnpairedDataset", "load_prepared", "prepare"]
