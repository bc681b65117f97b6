"""The model centre: versioned scoring models (LightGBM or ONNX) whose calibrated score the
risk rules read as ``model.score`` (issue 19; docs/risk.md "Models", ADR 0013)."""
