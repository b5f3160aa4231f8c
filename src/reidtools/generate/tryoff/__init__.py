"""TryOffAnyone: flat garment images from dressed people (HSGL's garment catalogue)."""
