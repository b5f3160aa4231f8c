"""Human parsing, pose keypoints, clothing masks, image quality and the papers' selection rules.

Keypoint convention (every `pose` in the metadata): {"format": "mediapipe33", "points": [[x, y, c], ...]}
with x, y normalised to [0, 1] by the image width and height (x*W, y*H are continuous pixel
coordinates; pixel i covers [i, i+1)) and c the keypoint's confidence/visibility in [0, 1].
"""
