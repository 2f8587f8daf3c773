"""Data: dataset formats and samples, the synthetic renderer, the crop cache, augmentation,
samplers and the training dataset. Reader -> Sample -> crop cache -> FaceCrops -> loader."""
