"""A session with its inputs and outputs resident on its device, bound once.

Timing must not include host-device copies: inputs are copied to the device once here, and the
output buffers are allocated once (by the caller's shapes, or by onnxruntime on the first run and
then kept bound), so each timed run only launches the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from profilers._sessions import import_onnxruntime


class BoundSession:
    """``run()`` executes the model on device-resident, pre-bound inputs and outputs.

    ``output_arrays`` (name -> an array of the output's shape and dtype, e.g. an earlier run's
    outputs) pre-allocates the outputs; CUDA graphs need that, since their addresses must not
    change after capture. ``run_config`` entries go into the RunOptions of every run.
    """

    def __init__(
        self,
        session: Any,
        feed: Mapping[str, np.ndarray],
        *,
        device_type: str,
        device_id: int = 0,
        output_arrays: Mapping[str, np.ndarray] | None = None,
        run_config: Mapping[str, str] | None = None,
    ) -> None:
        onnxruntime = import_onnxruntime()
        self.session = session
        self.binding = session.io_binding()
        self._values: dict[str, Any] = {}
        for name, array in feed.items():
            value = onnxruntime.OrtValue.ortvalue_from_numpy(
                np.ascontiguousarray(array), device_type, device_id
            )
            self._values[name] = value  # keep alive: the binding holds only the pointer
            self.binding.bind_ortvalue_input(name, value)
        self._output_names = [o.name for o in session.get_outputs()]
        self._outputs_fixed = output_arrays is not None
        for name in self._output_names:
            if output_arrays is not None:
                template = output_arrays[name]
                value = onnxruntime.OrtValue.ortvalue_from_shape_and_type(
                    list(template.shape), template.dtype, device_type, device_id
                )
                self._values["output:" + name] = value
                self.binding.bind_ortvalue_output(name, value)
            else:
                self.binding.bind_output(name, device_type, device_id)
        self.run_options = onnxruntime.RunOptions()
        for key, entry in (run_config or {}).items():
            self.run_options.add_run_config_entry(key, entry)

    def run(self) -> None:
        self.session.run_with_iobinding(self.binding, self.run_options)
        if not self._outputs_fixed:
            # Keep the buffers onnxruntime allocated on the first run: later runs allocate nothing.
            for name, value in zip(self._output_names, self.binding.get_outputs()):
                self._values["output:" + name] = value
                self.binding.bind_ortvalue_output(name, value)
            self._outputs_fixed = True

    def outputs(self) -> dict[str, np.ndarray]:
        """The last run's outputs, copied to the host (outside any timed region)."""
        return dict(zip(self._output_names, self.binding.copy_outputs_to_cpu()))
