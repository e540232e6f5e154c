# tau-norm (Kang et al., ICLR 2020) on Fashion-MNIST-LT: the joint
# cross-entropy run's classifier rows divided by their norm to the power tau,
# post hoc (_base_/classifier_stage_fashionmnistlt.py without its training).
# Nothing is trained: tau is chosen on the validation split (100 held-out
# training images per class; the test set is never read), written into a
# copy of the checkpoint, and tools/test.py evaluates that on the test set.
#
#   python tools/train.py configs/ce_fashionmnistlt.py
#   python tools/analysis_tools/tau_norm_search.py \
#       configs/decoupled/taunorm_fashionmnistlt.py \
#       work_dirs/ce_fashionmnistlt/epoch_20.pth \
#       --work-dir work_dirs/taunorm_fashionmnistlt
#   python tools/test.py configs/decoupled/taunorm_fashionmnistlt.py \
#       work_dirs/taunorm_fashionmnistlt/tau_norm.pth
# A fixed tau instead: tools/test.py ... CHECKPOINT --cfg-options
#   model.head.tau=0.5
_base_ = ['./_base_/classifier_stage_fashionmnistlt.py']

# the joint checkpoint of the commands above
stage1_checkpoint = 'work_dirs/ce_fashionmnistlt/epoch_20.pth'
model = dict(head=dict(mode='tau_norm'))
# post hoc: no training loop, optimizer or training data
train_dataloader = train_cfg = optim_wrapper = param_scheduler = None
auto_scale_lr = None
