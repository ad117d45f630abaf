"""A task module for test_warm_pods.py: reports what its process sees, then exits as asked."""
import os
import sys
from pathlib import Path

if __name__ == "__main__":
    mount, status = sys.argv[1], int(sys.argv[2])
    print(f"argv={sys.argv[1:]} pid={os.getpid()} GREETING={os.environ.get('GREETING')} "
          f"OTHER={os.environ.get('OTHER')}")
    print("mounted:", sorted(os.listdir(mount)) if os.path.isdir(mount) else None)
    Path(mount, f"written-{status}").write_text("from the task")
    if status == 99:
        raise RuntimeError("the task failed")
    sys.exit(status)
