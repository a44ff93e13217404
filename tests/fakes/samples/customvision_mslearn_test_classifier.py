# ruff: noqa  -- vendor sample kept as published; lint would "fix" it away from the original
# Microsoft Learn exercise "Classify Images with Azure AI Custom Vision" (AI-102), its Python
# prediction client, kept as published (nothing changed: it reads PredictionEndpoint, PredictionKey,
# ProjectID and ModelName from a .env file in the working directory, and images from ./test-images/).
# Source: https://github.com/MicrosoftLearning/mslearn-ai-vision/blob/main/Labfiles/image-classification/python/test-classifier/test-classifier.py
# (commit cd48e77cb0188e16fc38825b1961a46462c79ad6; MicrosoftLearning lab code, MIT licence),
# instructions: Instructions/Exercises/07-custom-vision-image-classification.md in that repository.
from azure.cognitiveservices.vision.customvision.prediction import CustomVisionPredictionClient
from msrest.authentication import ApiKeyCredentials
import os

def main():
    from dotenv import load_dotenv

    # Clear the console
    os.system('cls' if os.name=='nt' else 'clear')

    try:
        # Get Configuration Settings
        load_dotenv()
        prediction_endpoint = os.getenv('PredictionEndpoint')
        prediction_key = os.getenv('PredictionKey')
        project_id = os.getenv('ProjectID')
        model_name = os.getenv('ModelName')

        # Authenticate a client for the prediction API
        credentials = ApiKeyCredentials(in_headers={"Prediction-key": prediction_key})
        prediction_client = CustomVisionPredictionClient(endpoint=prediction_endpoint, credentials=credentials)

        # Classify test images
        for image in os.listdir('test-images'):
            image_data = open(os.path.join('test-images',image), "rb").read()
            results = prediction_client.classify_image(project_id, model_name, image_data)

            # Loop over each label prediction and print any with probability > 50%
            for prediction in results.predictions:
                if prediction.probability > 0.5:
                    print(image, ': {} ({:.0%})'.format(prediction.tag_name, prediction.probability))
    except Exception as ex:
        print(ex)

if __name__ == "__main__":
    main()
