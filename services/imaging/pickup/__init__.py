"""Pick-up of studies that reach an institution's Orthanc over DICOM (C-STORE), not STOW-RS."""
