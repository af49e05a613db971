"""Extractors: models (DETR, face, SigLIP, torchvision/timm) that write embeddings into a store."""
