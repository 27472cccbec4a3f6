"""The report page (Jinja2, rendered with autoescape on: every value is escaped)."""

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Model Doctor report</title>
<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}img{max-width:100%}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}
section{margin-bottom:2.5em}pre{background:#f6f6f6;padding:8px;overflow:auto;font-size:12px}.muted{color:#777}</style>
</head><body>
<h1>Model Doctor report</h1>
<p class="muted">Run folder: {{ run_dir }}</p>
{% for s in sections %}
<section id="{{ s.id }}"><h2>{{ s.title }}</h2>
{% if s.note %}<p>{{ s.note }}</p>{% endif %}
{% for t in s.tables %}<table><tr>{% for h in t.header %}<th>{{ h }}</th>{% endfor %}</tr>
{% for row in t.rows %}<tr>{% for v in row %}<td>{{ v }}</td>{% endfor %}</tr>{% endfor %}</table><br>{% endfor %}
{% for img in s.images %}<figure><img alt="{{ img.alt }}" src="data:image/png;base64,{{ img.data }}"><figcaption class="muted">{{ img.alt }}</figcaption></figure>{% endfor %}
{% for p in s.pres %}<details><summary>{{ p.split('\n', 1)[0][2:] }}</summary><pre>{{ p }}</pre></details>{% endfor %}
{% if s.empty %}<p class="muted">{{ s.empty }}</p>{% endif %}
</section>
{% endfor %}
</body></html>
"""
