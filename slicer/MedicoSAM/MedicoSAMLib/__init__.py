"""The parts of the MedicoSAM module that do not need Slicer (tested outside it)."""
