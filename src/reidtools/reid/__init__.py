"""ReID training: backbones, BNNeck heads, losses (CE, triplet, CAL, HSAL), PK sampling, DLCR
progressive pairing, the accelerate training loop, run folders and feature extraction."""
