"""Inspector: industrial quality inspection that keeps learning."""
