# Types of trainyard/__init__.py (which stays plain Python 3.6 for the copy a
# node agent puts on every task's PYTHONPATH) and of the client names it
# re-exports from trainyard.client on first use.
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from .client import Artifact as Artifact
from .client import Client as Client
from .client import MetricSeries as MetricSeries
from .client import MetricSummary as MetricSummary
from .client import Run as Run
from .client import RunFailedError as RunFailedError
from .client import TrainyardError as TrainyardError

__version__: str
METRIC_PREFIX: str
_CLIENT_NAMES: Tuple[str, ...]

def log(name: str, value: Any, step: Optional[int] = ...) -> None: ...
def log_many(metrics: Mapping[str, Any], step: Optional[int] = ...) -> None: ...
def output_dir() -> str: ...
def task() -> Dict[str, Union[str, int, None]]: ...

class KerasCallback:
    model: Any
    params: Dict[str, Any]
    validation_data: Any
    def __init__(self) -> None: ...
    def on_epoch_end(self, epoch: int, logs: Optional[Mapping[str, Any]] = ...) -> None: ...
    def set_model(self, model: Any) -> None: ...
    def set_params(self, params: Dict[str, Any]) -> None: ...
    def __getattr__(self, name: str) -> Any: ...

Callback = KerasCallback
