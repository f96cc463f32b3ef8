"""The teleconsult service (see ../shared/DESIGN.md); its routes arrive with its issue."""
