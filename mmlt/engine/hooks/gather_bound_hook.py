"""Bound the cross-rank gathers of the training step by the batch size."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmlt.engine.protocols import GathersAcrossRanks
from mmlt.registry import HOOKS


def outermost_modules(model, protocol: type) -> list:
    """The modules of ``model`` that declare ``protocol`` and lie in no
    other such module (a RoI head, not also the loss it bounds itself)."""
    found, prefixes = [], []
    for name, module in model.named_modules():
        if any(name.startswith(prefix) for prefix in prefixes):
            continue
        if isinstance(module, protocol):
            found.append(module)
            prefixes.append(f'{name}.' if name else '')
    return found


@HOOKS.register_module()
class GatherBoundHook(Hook):
    """Hand the training loader's batch size to the modules that gather
    rows across ranks (:class:`~mmlt.engine.protocols.GathersAcrossRanks`:
    SupCon, BCL and ProCo losses, the contrastive RoI head).

    Their gathers then pad every rank's rows to a bound instead of first
    exchanging the ranks' sizes, which reads them on the host: a GPU step
    would wait for everything queued before it. Without this hook the
    gathers still work, one host read each. A no-op in one process.
    """

    def before_train(self, runner) -> None:
        loader = runner.train_dataloader
        batch_size = getattr(getattr(loader, 'batch_sampler', None),
                             'batch_size', None) or getattr(
                                 loader, 'batch_size', None)
        if not isinstance(batch_size, int) or batch_size < 1:
            runner.logger.warning(
                'GatherBoundHook: the training loader has no batch size; '
                'gathers across ranks exchange their sizes (a host read)')
            return
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        for module in outermost_modules(model, GathersAcrossRanks):
            module.set_max_batch_size(batch_size)
