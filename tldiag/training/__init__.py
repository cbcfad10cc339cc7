"""The training wing: one training loop (:mod:`.loop`) and what trains with it.

* :mod:`.loop`: the training loop of fine-tuning and of the data-efficiency arms, with its batches and its split.
* :mod:`.finetune`: fine-tuning strategies, defaults with reasons, the ``finetune`` job kind.
* :mod:`.efficiency`: the data-efficiency experiment (budgets x repeats x arms), its readouts, the ``efficiency`` job.
* :mod:`.smallcnn`: the small CNN trained from scratch beside the transfer arms.
* :mod:`.augment`: per-image augmentations applied per batch on the device.
* :mod:`.jobs`: background jobs (one OS process each, a SQLite record, slots per queue) and :func:`launch`.

Importing the package imports nothing heavy; import the modules.
"""
