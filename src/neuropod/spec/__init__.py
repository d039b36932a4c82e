"""Problem definitions: tensor specs and the validation of tensors against them."""

from neuropod.spec.dtypes import DTYPES, canonical_dtype
from neuropod.spec.tensor_spec import Dim, TensorSpec, parse_specs
from neuropod.spec.validation import TensorValidator

__all__ = ["DTYPES", "Dim", "TensorSpec", "TensorValidator", "canonical_dtype", "parse_specs"]
