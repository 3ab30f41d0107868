"""File names and tolerances of the ONNX graph (no torch: the export and the configuration read them)."""

#: The ONNX graph a trial measured, in its model directory and in an export.
ONNX_FILE = "model.onnx"
#: Largest |output difference| allowed between an fp32 ONNX graph and PyTorch.
ONNX_TOLERANCE = 1e-3
#: ... and between an fp16 graph and the fp16 PyTorch model (relative to the outputs' scale).
FP16_TOLERANCE = 1e-2

#: The input that tells segments apart, in families that have token types.
TOKEN_TYPES = "token_type_ids"
