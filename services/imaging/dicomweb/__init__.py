"""DICOMweb (PS3.18) over the institutions' stores: STOW-RS in `stow` and `router`."""
