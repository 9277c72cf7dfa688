#!/usr/bin/env python3
"""One timed decode + render of a DICOM file with pydicom (+ pylibjpeg-openjpeg).

Usage: pydicom_decode.py FILE REPEATS -> prints one wall time in seconds per line.
Render = pixel_array -> apply_modality_lut -> apply_voi_lut, then normalised to [0, 1]
float32: the same work medgate's decode_dicom does. Interpreter start-up and imports are
outside the timed region.
"""
import sys
import time

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut, apply_voi_lut

path, repeats = sys.argv[1], int(sys.argv[2])
for _ in range(repeats):
    t = time.perf_counter()
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    out = apply_voi_lut(apply_modality_lut(arr, ds), ds)
    out = (out / 4095.0).astype(np.float32)
    print(f"{time.perf_counter() - t:.6f}", flush=True)
