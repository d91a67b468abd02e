"""Review data: the data folder, the star-rated review sources, the aspect-annotated sentences, the sample.

Start reading here: ``paths`` (the one resolver of ``../shared/data``) → ``sources`` (reviews) →
``aspect_sources`` (aspect sentences); ``samplegen`` writes the project's own ``sample/``. Imports nothing
of ours but ``reviews_mtl.contracts``, and nothing heavy.
"""

from reviews_mtl.data.paths import DataError, resolve_data_dir
from reviews_mtl.data.sources import SourceReview, load_review_pool, load_sample_reviews

__all__ = ["DataError", "SourceReview", "load_review_pool", "load_sample_reviews", "resolve_data_dir"]
