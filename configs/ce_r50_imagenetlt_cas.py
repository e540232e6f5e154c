# Class-aware sampling baseline on ImageNet-LT: ce_r50_imagenetlt.py with
# class-balanced batches instead of a loss correction. Each draw picks a class
# uniformly, then 4 images of it (num_samples_cls=4, as in the class-balanced
# sampler of Kang et al., "Decoupling Representation and Classifier", ICLR
# 2020), len(dataset) images per epoch. Trained jointly from scratch like
# this, re-sampling over-fits the few-shot classes (Kang et al., Table 1);
# its usual use is the second, classifier-only stage. Other samplers:
# dict(type='mmlt.SquareRootSampler', power=0.5) or
# dict(type='mmlt.ProgressivelyBalancedSampler', total_epochs=90).
_base_ = ['./ce_r50_imagenetlt.py']

train_dataloader = dict(
    sampler=dict(
        _delete_=True, type='mmlt.ClassAwareSampler', num_samples_cls=4))

# The losses' class prior is the sampled stream's (near-uniform), not the
# annotation file's: unused by plain cross-entropy, but right for any loss
# that reads it (logit adjustment would otherwise balance a second time).
custom_hooks = [
    dict(type='mmlt.ClassCountsHook', prior='stream'),
    dict(type='mmlt.VMFWindowHook'),
    dict(type='mmlt.ExactResumeHook'),
    dict(type='mmlt.CheckpointCheckHook'),
]
