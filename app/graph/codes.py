"""Machine-readable codes of validation problems, beside their prose: for `nodeloom validate --json`, the
editor's Errors dock and an HTTP API. The names follow ComfyUI's validation where it has one
(`required_input_missing`, `value_smaller_than_min`, ...), so tools that know one know the other.

Pure data: never import Qt or torch here.
"""

from __future__ import annotations

from enum import StrEnum


class ProblemCode(StrEnum):
    UNKNOWN_NODE_TYPE = "unknown_node_type"
    NEWER_VERSION = "newer_node_version"
    UNKNOWN_PARAM = "unknown_param"
    UNKNOWN_INPUT = "unknown_input"
    REQUIRED_INPUT_MISSING = "required_input_missing"
    NOT_AN_OUTPUT = "not_an_output"
    TYPE_MISMATCH = "return_type_mismatch"
    FAMILY_MISMATCH = "model_family_mismatch"
    INVALID_INPUT_TYPE = "invalid_input_type"
    VALUE_SMALLER_THAN_MIN = "value_smaller_than_min"
    VALUE_BIGGER_THAN_MAX = "value_bigger_than_max"
    VALUE_NOT_IN_LIST = "value_not_in_list"
    FILE_NOT_FOUND = "file_not_found"
    CYCLE = "cycle"
    NODE_CHECK = "node_check_failed"  # a node's own validation (a checkpoint it cannot read...)
    INPUT_REMOVED = "input_removed"  # fed by a muted or bypassed node that cannot pass it on
    NO_OUTPUT = "no_output"
    NO_SUCH_NODE = "no_such_node"
    TOO_LARGE = "too_large"  # the run needs more memory than the device has free (app/engine/resources.py)
