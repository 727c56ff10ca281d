"""PyTorch reference implementation, for parity tests only.

Nothing in the JAX code imports this package.  It is an independent PyTorch (NCHW)
implementation of the same maths, written from SPEC.md and the documented JAX
conventions, so that the two can be compared number for number:

* :mod:`.losses`     scale-weight variants, scale loss, location loss, SD loss, soft IoU,
                     Dice, BCE, focal and the deep-supervision total loss.
* :mod:`.attention`  CBAM channel / spatial attention and the Gaussian spatial attention
                     with the rotated pinwheel mask (straight-through ``.detach()`` round).
* :mod:`.model`      residual block, PConv and the MSHNet-style U-Net with side outputs.
* :mod:`.metrics`    mIoU / nIoU / Pd / Fa in numpy with its own BFS connected components.
* :mod:`.parity`     the comparisons (JAX vs PyTorch) used by tests/test_parity*.py;
                     ``cd tests && python -m reference_torch.parity`` prints the table.

The submodules import torch themselves; importing this package does not.
"""
