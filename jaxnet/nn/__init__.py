"""The layers and networks, one small module per family (`_layer.py` holds the contract).

Import them from `jaxnet` (`jaxnet.Dense`, `jaxnet.serial`, ...): that is their one public path.
Modules: `_layer` (the `Layer` contract), `_checks` (the shared argument checks), `dense`,
`activations`, `normalization` (BatchNorm), `dropout`, `conv` (im2col, Conv2D), `pool` (MaxPool2D,
AvgPool2D, Flatten), `network` (Network, serial, mlp), `models` (the book's networks),
`book_weights` (the book authors' trained weights).
"""
