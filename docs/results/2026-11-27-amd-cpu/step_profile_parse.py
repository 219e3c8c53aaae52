import sys, glob, json, collections
sys.path.insert(0, "/tmp/profpkgs")
from xprof.convert import raw_to_tool_data as r
f = sorted(glob.glob("/tmp/prof/log/plugins/profile/*/*.xplane.pb"))[-1]
data, ct = r.xspace_to_tool_data([f], "framework_op_stats", {})
if isinstance(data, bytes): data = data.decode()
print(type(data), len(data)); open("/tmp/prof/ops.txt","w").write(data if isinstance(data,str) else json.dumps(data))
