"""The model toolchain: turns data into the compressed ONNX artifacts workers serve.

Torch lives only here (the `toolchain` extra); workers never import this package. Generic steps:

- `stats`     accuracy with a Wilson 95 % interval
- `latency`   onnxruntime latency p50/p99 per batch size; parameter and MAC counts of a graph
- `quantize`  pre-processing, graph optimisation, INT8 static QDQ, FP16
- `prune`     structured (channel) pruning of Conv-BN stacks
- `cards`     a `ModelCard` assembled from an ONNX file and measured numbers
- `build`     `ontime models build|evaluate <pipeline>` dispatch; `render_cards` writes docs/models.md

Each pipeline has its own subpackage (`vision`, `acoustic`) whose `build.build(out_dir, quick)` runs
data → teacher → student → pruning → export → optimisation → quantization → evaluation → cards.
"""
