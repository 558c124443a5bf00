"""clusterqc: decide, with humans in the loop, which image-text clusters are worth training CLIP on."""

__version__ = "0.1.0"
