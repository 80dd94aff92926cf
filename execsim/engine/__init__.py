"""The pure matching engine: `Engine(clock, EngineConfig(...))`. See `core` for the order lifecycle
and `intrabar` for how resting orders meet a bar."""

from execsim.engine.config import EngineConfig
from execsim.engine.core import Engine, Event, MarketState, WorkingOrder
from execsim.engine.intrabar import bar_path

__all__ = ["Engine", "EngineConfig", "Event", "MarketState", "WorkingOrder", "bar_path"]
