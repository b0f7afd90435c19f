"""INT8 calibration and precision conversion: representative frames through the shared preprocessing
become a reusable calibration set, and ONNX models are rewritten with precision in the graph
(FP16 by conversion, INT8 by explicit QuantizeLinear/DequantizeLinear pairs), which is what
TensorRT 10 and 11 (strongly typed) and ONNX Runtime both consume.
"""
