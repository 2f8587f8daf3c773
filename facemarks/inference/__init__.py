"""Inference: trained models applied to photos.

    predictor.py   load(), LandmarkPredictor (crop policy -> crops -> runner -> to_source), TorchRunner
    cascade.py     CascadePredictor: stage 1 on boxes, stage 2 on crops aligned to its points
    onnx.py        export_onnx (with the parity check), OnnxRunner, ONNX metadata, onnx_for_checkpoint
    preprocess.py  crops_to_input, cut_crops, as_rgb_image (shared by every backend)
    detect.py      face detectors registered in DETECTORS ("haar", "whole"), BoxesFile
    bench.py       faces/s, size and multiply-adds of models
    files.py       images, folders and videos -> the predictions JSON document and overlays

Dependencies point one way: predictor -> cascade, preprocess, detect (by registry) and,
lazily, onnx; onnx -> preprocess and engine.checkpoint; bench -> onnx, predictor.
"""
