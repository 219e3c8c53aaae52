import json, collections
d = json.loads(open("/tmp/prof/ops.txt").read())
rows = d[0]["rows"] if isinstance(d, list) else d["rows"]
bytype = collections.Counter(); byop = collections.Counter()
for row in rows:
    c = [v.get("v") for v in row["c"]]
    if c[2] == "IDLE": continue
    bytype[c[2]] += c[7]; byop[c[3]] += c[7]
tot = sum(bytype.values())
print("total self us", tot)
for k, v in bytype.most_common(25): print(f"{v/tot*100:6.2f}% {v/4/1000:8.1f} ms/step {k}")
print()
for k, v in byop.most_common(30): print(f"{v/tot*100:6.2f}% {v/4/1000:8.1f} {k[-110:]}")
