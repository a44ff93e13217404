"""A fake Amazon Rekognition Custom Labels + S3 for imgcls's `aws` provider, spoken to through boto3."""
from tests.fakes.aws.server import ACCESS_KEY, SECRET_KEY, FakeAws

__all__ = ["ACCESS_KEY", "SECRET_KEY", "FakeAws"]
