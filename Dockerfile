# The vantage6 algorithm image of this project (analysis.federated): a node runs it on its
# own folder database (specs/ and raw/ of its trials). Build and push it to a registry your
# vantage6 server allows:
#   docker build -t <registry>/ipd-exercise-lbp:<version> .
FROM python:3.11-slim

WORKDIR /algorithm
COPY pyproject.toml README.md ./
COPY analysis ./analysis
RUN pip install --no-cache-dir .

# vantage6's wrapper reads the task input and calls the function it names in this package
ENV PKG_NAME=analysis.federated
CMD ["python", "-c", "from vantage6.algorithm.tools.wrap import wrap_algorithm; wrap_algorithm()"]
