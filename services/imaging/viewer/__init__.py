"""The DICOM viewer page: a radiologist reads a share and writes the report, in ar, fr, en."""
