# The proxy and the forwarding worker share this image (docker-compose.yml picks the command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
# every package pyproject.toml installs (tests/unit/test_dockerfile.py holds the two lists
# together), and the profiles `fhirplug stack init-store` loads
COPY proxy ./proxy
COPY hubspoke ./hubspoke
COPY fhirpatch ./fhirpatch
COPY forwarding ./forwarding
COPY eps ./eps
COPY careaccess ./careaccess
COPY dispensing ./dispensing
COPY gpnotify ./gpnotify
COPY canonicals ./canonicals
COPY validation ./validation
COPY p2p ./p2p
COPY subscriptions ./subscriptions
COPY console ./console
COPY plugins ./plugins
COPY worker ./worker
COPY ops ./ops
COPY profiles ./profiles
RUN pip install --no-cache-dir . && useradd --system --uid 10001 fhirplug \
    && mkdir -p /var/lib/fhirplug/keys && chown fhirplug /var/lib/fhirplug/keys && chmod 700 /var/lib/fhirplug/keys
USER fhirplug
EXPOSE 8080
ENV FHIRPLUG_BIND=0.0.0.0:8080
# prometheus_client's multiprocess files: somewhere the fhirplug user may write (/app is root's)
ENV FHIRPLUG_METRICS_DIR=/tmp/fhirplug-metrics
CMD ["gunicorn", "-c", "/app/proxy/gunicorn_conf.py", "proxy.wsgi:app"]
