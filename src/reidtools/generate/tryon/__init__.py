"""IDM-VTON-compatible try-on (HSGL SHSG): the pipeline, its repaint inputs and the pair choice."""
