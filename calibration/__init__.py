"""INT8 calibration: representative frames through the shared preprocessing to Q/DQ ONNX models.

Planned in issue 4; nothing here yet.
"""
