"""DiVE (seed 002): identity tokens and a camera/modality LoRA on SD 1.5; fitting and sampling."""
