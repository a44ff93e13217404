"""The `aws` provider: Amazon Rekognition Custom Labels through boto3."""
