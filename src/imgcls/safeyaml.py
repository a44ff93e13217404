"""YAML for files a person wrote: PyYAML's safe loader, refusing what a config never needs.

Duplicate keys (the first would be silently lost), aliases that expand past a bound (billion laughs)
and nesting past a depth are refused while the document is composed, before they cost time or memory.
"""
from __future__ import annotations

import yaml

MAX_NODES = 100_000   # the document as a tree: an alias counts as the whole subtree it names
MAX_DEPTH = 100


class Refused(yaml.MarkedYAMLError):
    """Well-formed YAML we will not load; `problem` says why, `problem_mark` where."""


class Loader(yaml.SafeLoader):
    def __init__(self, stream):
        super().__init__(stream)
        self._nodes = 0                     # nodes so far, aliases expanded
        self._depth = 0
        self._sizes: dict[str, int] = {}    # anchor -> expanded size of its node, once composed

    def fetch_flow_collection_start(self, TokenClass):
        # The scanner looks ahead through a whole flow collection ([[[…]]]), so depth is bounded here too.
        if self.flow_level >= MAX_DEPTH:
            raise Refused(None, None, f"nested deeper than {MAX_DEPTH} levels", self.get_mark())
        super().fetch_flow_collection_start(TokenClass)

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self.anchors:  # an unknown anchor is PyYAML's own error, below
                size = self._sizes.get(event.anchor)
                if size is None:
                    raise Refused(None, None, f"alias *{event.anchor} refers to a node that contains it "
                                              "(a recursive structure)", event.start_mark)
                self._count(size, event.start_mark)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise Refused(None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        start = self._nodes
        self._count(1, event.start_mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self._sizes[anchor] = self._nodes - start
        return node

    def _count(self, n: int, mark) -> None:
        self._nodes += n
        if self._nodes > MAX_NODES:
            raise Refused(None, None, f"anchors and aliases expand the document past {MAX_NODES:,} values "
                                      "(an alias bomb?)", mark)

    def construct_mapping(self, node, deep=False):
        # Checked before SafeConstructor merges `<<` keys, which may legitimately repeat a key.
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = self.construct_object(key_node)
                if key in seen:
                    raise Refused(None, None, f"duplicate key '{key_node.value}' (first at line "
                                              f"{seen[key].line + 1}); one of them would be ignored",
                                  key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep)


def load(text: str):
    """(node, data): the composed node tree (for line numbers) and the plain data, or (None, None)."""
    loader = Loader(text)
    try:
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    finally:
        loader.dispose()


def load_value(text: str):
    """One value, as `--set key=value` gives it."""
    return load(text)[1]
