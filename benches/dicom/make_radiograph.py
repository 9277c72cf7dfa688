#!/usr/bin/env python3
"""Writes a synthetic 16-bit (12 bits stored) 2500 x 3000 radiograph as JPEG 2000 lossless DICOM.

Usage: make_radiograph.py OUT.dcm   (needs pydicom, numpy, pylibjpeg-openjpeg)
The image is smooth anatomy-like structure plus noise (so the codestream is realistic,
~60% of raw size), MONOCHROME2 with a VOI window, like a DX/CR for-presentation file.
"""
import sys

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import JPEG2000Lossless, ExplicitVRLittleEndian, generate_uid

rows, cols = 3000, 2500
rng = np.random.default_rng(20260101)
y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
body = np.exp(-(((x - cols / 2) / (cols * 0.35)) ** 2 + ((y - rows / 2) / (rows * 0.45)) ** 2))
ribs = 0.15 * (np.sin(y / 37.0) > 0.6) * body
img = 600 + 2600 * body + 700 * ribs + rng.normal(0, 40, (rows, cols))
arr = np.clip(img, 0, 4095).astype(np.uint16)

ds = Dataset()
ds.file_meta = FileMetaDataset()
ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
ds.SOPInstanceUID = generate_uid(entropy_srcs=["medgate-bench-radiograph"])
ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
ds.Modality = "DX"
ds.Rows, ds.Columns = rows, cols
ds.SamplesPerPixel = 1
ds.PhotometricInterpretation = "MONOCHROME2"
ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
ds.WindowCenter, ds.WindowWidth = 2048, 4096
ds.RescaleSlope, ds.RescaleIntercept = 1, 0
ds.PixelData = arr.tobytes()
ds.compress(JPEG2000Lossless, arr, encoding_plugin="pylibjpeg")
ds.save_as(sys.argv[1], enforce_file_format=True)
