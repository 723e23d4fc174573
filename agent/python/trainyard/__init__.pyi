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
from .sweeps import Sweep as Sweep
from .sweeps import SweepFailedError as SweepFailedError
from .sweeps import Trial as Trial
from .sweeps import asha as asha
from .sweeps import bandit as bandit
from .sweeps import choice as choice
from .sweeps import lognormal as lognormal
from .sweeps import loguniform as loguniform
from .sweeps import median_stopping as median_stopping
from .sweeps import normal as normal
from .sweeps import qlognormal as qlognormal
from .sweeps import qloguniform as qloguniform
from .sweeps import qnormal as qnormal
from .sweeps import quniform as quniform
from .sweeps import randint as randint
from .sweeps import truncation_selection as truncation_selection
from .sweeps import uniform as uniform

__version__: str
METRIC_PREFIX: str
_CLIENT_NAMES: Tuple[str, ...]
_SWEEP_NAMES: Tuple[str, ...]

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
