"""Proposers turn (spec, program, head, history, idea) into a candidate by editing a worktree."""

from overnight.proposers.base import FatalProposerError, Proposal, ProposalContext, Proposer, StopProposing

__all__ = ["FatalProposerError", "Proposal", "ProposalContext", "Proposer", "StopProposing", "make_proposer"]


def make_proposer(kind: str, track, tag: str, **options) -> Proposer:
    if kind == "optuna":
        from overnight.proposers.optuna import OptunaProposer

        return OptunaProposer(track, tag)
    if kind == "llm":
        from overnight.proposers.llm import LLMProposer

        return LLMProposer(track, **options)
    if kind == "agent":
        from overnight.proposers.agent import AgentProposer

        return AgentProposer(track, **options)
    raise ValueError(f"unknown proposer {kind!r}: choose optuna, llm or agent")
