"""The contract between describing and running: the logical graph and its compiled form (sub-topologies)."""

from .compiler import SubTopology, Topology, compile_graph
from .graph import Graph, Node

__all__ = ["Graph", "Node", "SubTopology", "Topology", "compile_graph"]
