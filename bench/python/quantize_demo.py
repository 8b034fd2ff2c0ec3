#!/usr/bin/env python3
"""Writes the onnxruntime int8 twin of a bundle's model (quantize_dynamic: u8 activations, s8
weights) for the Python worker peer. usage: quantize_demo.py MODEL_ONNX OUT_ONNX"""
import sys

from onnxruntime.quantization import QuantType, quantize_dynamic

quantize_dynamic(sys.argv[1], sys.argv[2], weight_type=QuantType.QInt8)
