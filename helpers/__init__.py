"""Helpers for the course book *Encoder Embeddings and Anisotropy*.

Modules, one concept each:

``config``       load and validate ``config.yaml``
``corpus``       read a chunks corpus, split it into train/test
``encoders``     resolve model roles to sentence encoders (pooling, normalisation explicit)
``embeddings``   encode with a verified on-disk cache
``geometry``     anisotropy, isotropy and separability measurements
``transforms``   centering, whitening, all-but-the-top
``analysis``     the shared pipeline: corpus -> embeddings -> measurements
``charts``       Altair setup and the book's chart vocabulary
``pretraining``  the book's small BERT (masked-language modelling)
``finetuning``   contrastive fine-tuning with sentence-transformers
``storage``      atomic, verified files and folders
``book``         one-call setup for chapters
``cli``          ``python -m helpers ...``
"""

__version__ = "0.1.0"
