"""Public dataset artifacts: versions, files, metadata, provenance, exports."""
