"""tools/ scripts leave a finished distributed run with ``os._exit(0)``
(mmlt.utils.launch.exit_finished_run) after running Python's exit handlers
and flushing their output; after a single-process run they exit normally.

A gloo process that had destroyed its process group still aborted now and
then while the interpreter tore down (SIGABRT, exit code -6, after the run
had finished): this checks what skipping that teardown must keep.
"""
import subprocess
import sys
import textwrap

from test_train_resume import REPO

SCRIPT = textwrap.dedent('''
    import atexit, os, sys
    sys.path.insert(0, {repo!r})
    import torch.distributed as dist
    from mmlt.utils.launch import close_process_group, exit_finished_run

    marker = sys.argv[1]
    atexit.register(lambda: open(marker, 'w').write('exit handler ran'))
    if sys.argv[2] == 'distributed':
        dist.init_process_group(
            'gloo', init_method='tcp://127.0.0.1:' + sys.argv[3],
            rank=0, world_size=1)
        dist.barrier()
    close_process_group()
    sys.stdout.write('unterminated line, still buffered')
    sys.stderr.write('stderr text')
    exit_finished_run()
    print(' -- after exit_finished_run')
''')


def run(tmp_path, mode, port):
    script = tmp_path / 'script.py'
    script.write_text(SCRIPT.format(repo=REPO))
    marker = tmp_path / 'marker.txt'
    out = subprocess.run(
        [sys.executable, str(script), str(marker), mode, str(port)],
        capture_output=True, text=True, timeout=120)
    return out, marker


def test_distributed_run_exits_at_once_keeping_output_and_handlers(
        tmp_path, port):
    out, marker = run(tmp_path, 'distributed', port)
    assert out.returncode == 0, out.stderr
    # the buffered output was flushed, nothing after the call ran
    assert out.stdout == 'unterminated line, still buffered'
    assert out.stderr.endswith('stderr text')
    # Python's exit handlers ran before os._exit
    assert marker.read_text() == 'exit handler ran'


def test_single_process_run_returns_and_exits_normally(tmp_path):
    out, marker = run(tmp_path, 'single', port=0)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ('unterminated line, still buffered'
                          ' -- after exit_finished_run\n')
    assert marker.read_text() == 'exit handler ran'
