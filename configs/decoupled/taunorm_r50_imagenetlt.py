# tau-norm (Kang et al., ICLR 2020) on ImageNet-LT: the joint run's linear
# classifier rows divided by their norm to the power tau, post hoc; tau chosen
# on ImageNet-LT's validation list (20 images per class), never on the test
# set (_base_/classifier_stage_r50_imagenetlt.py without its training).
#
#   bash tools/dist_train.sh configs/decoupled/ce-linear_r50_imagenetlt.py 8
#   python tools/analysis_tools/tau_norm_search.py \
#       configs/decoupled/taunorm_r50_imagenetlt.py \
#       work_dirs/ce-linear_r50_imagenetlt/epoch_90.pth \
#       --work-dir work_dirs/taunorm_r50_imagenetlt
#   bash tools/dist_test.sh configs/decoupled/taunorm_r50_imagenetlt.py \
#       work_dirs/taunorm_r50_imagenetlt/tau_norm.pth 8
_base_ = ['./_base_/classifier_stage_r50_imagenetlt.py']

# the joint checkpoint of the commands above
stage1_checkpoint = 'work_dirs/ce-linear_r50_imagenetlt/epoch_90.pth'
model = dict(head=dict(mode='tau_norm'))
# post hoc: no training loop, optimizer or training data
train_dataloader = train_cfg = optim_wrapper = param_scheduler = None
auto_scale_lr = None
